//! `switchboard token`: a login token signed as the application's backend signs them.

use std::process::ExitCode;

use super::TokenArgs;

/// Prints one token on stdout and nothing else, so `$(switchboard token ...)` captures it.
pub(super) fn run_token(args: TokenArgs) -> ExitCode {
    let from_data = || {
        let dir = args.data.as_ref()?;
        let text = std::fs::read_to_string(dir.join(crate::serve::SECRET_FILE)).ok()?;
        Some(text.trim().to_owned())
    };
    let Some(secret) = args
        .jwt_secret
        .clone()
        .filter(|secret| !secret.is_empty())
        .or_else(from_data)
        .filter(|secret| !secret.is_empty())
    else {
        eprintln!(
            "switchboard token: no JWT secret: pass --jwt-secret, set SWITCHBOARD_JWT_SECRET, \
             or --data DIR of a server that generated one"
        );
        return ExitCode::from(2);
    };
    if args.ttl.as_secs() == 0 {
        eprintln!("switchboard token: --ttl must be at least 1s");
        return ExitCode::from(2);
    }
    let now = crate::logic::token::unix_now_secs();
    match crate::logic::token::mint(
        secret.as_bytes(),
        &args.user,
        args.device.as_deref(),
        args.ttl,
        now,
    ) {
        Ok(token) => {
            println!("{token}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("switchboard token: {e}");
            ExitCode::from(2)
        }
    }
}
