//! The command line with and without `--config`: the printed defaults round-trip, the file's
//! values apply, the command line and the environment win over it, and bad files are refused
//! with the key named.

use std::io::Write;

use super::*;

fn args(list: &[&str]) -> Vec<OsString> {
    ["switchboard"]
        .iter()
        .chain(list)
        .map(OsString::from)
        .collect()
}

fn file(text: &str) -> tempfile::NamedTempFile {
    let mut file = tempfile::NamedTempFile::new().expect("a temporary file");
    file.write_all(text.as_bytes())
        .expect("write the config file");
    file
}

/// `switchboard serve --config FILE` with `text` in the file, as the command line parses it.
fn parse_serve_with(text: &str) -> Result<Cli, CliError> {
    let config = file(text);
    parse(args(&[
        "serve",
        "--config",
        config.path().to_str().unwrap(),
    ]))
}

fn serve(list: &[&str]) -> ServeArgs {
    match parse(args(list))
        .unwrap_or_else(|e| panic!("{list:?}: {e}"))
        .command
    {
        Command::Serve(serve) => *serve,
        other => panic!("parsed as {other:?}"),
    }
}

fn echo(list: &[&str]) -> EchoArgs {
    match parse(args(list))
        .unwrap_or_else(|e| panic!("{list:?}: {e}"))
        .command
    {
        Command::Echo(echo) => *echo,
        other => panic!("parsed as {other:?}"),
    }
}

/// `args` as text, but for the path of the config file, so runs with and without one compare.
fn without_path(mut serve: ServeArgs) -> String {
    serve.process.config = None;
    format!("{serve:?}")
}

fn defaults_text() -> String {
    let root = command();
    config_file::defaults(root.find_subcommand("serve").unwrap())
}

#[test]
fn the_printed_defaults_are_accepted_unchanged_and_change_nothing() {
    let defaults = file(&defaults_text());
    let path = defaults.path().to_str().unwrap();
    assert_eq!(
        without_path(serve(&["serve", "--config", path])),
        without_path(serve(&["serve"]))
    );
    let mut with_file = echo(&["echo", "--config", path]);
    with_file.process.config = None;
    assert_eq!(format!("{with_file:?}"), format!("{:?}", echo(&["echo"])));
}

#[test]
fn the_printed_defaults_name_every_option_of_serve_once() {
    let text = defaults_text();
    let table: toml::Table = text.parse().expect("valid TOML");
    let root = command();
    for arg in root.find_subcommand("serve").unwrap().get_arguments() {
        let Some(long) = arg.get_long() else { continue };
        // Hidden options (measuring levers) are not config-file keys (`config_file.rs`).
        if ["config", "help", "version"].contains(&long) || arg.is_hide_set() {
            continue;
        }
        let set = table.contains_key(long);
        let commented = text.contains(&format!("\n# {long} = "));
        assert!(set ^ commented, "{long}: set {set}, commented {commented}");
    }
    assert_eq!(table["max-conns"].as_integer(), Some(1_000_000));
    assert_eq!(table["read-wait"].as_str(), Some("3m"));
    assert_eq!(table["no-nodelay"].as_bool(), Some(false));
    assert_eq!(table["log-format"].as_str(), Some("text"));
}

#[test]
fn file_values_apply_to_options_the_command_line_left_alone() {
    let config = file(
        "max-conns = 1234\nread_wait = \"5m\"\nno-nodelay = true\n\
         tcp = \"127.0.0.1:7000\"\nsynchronous = \"normal\"\nlog-format = \"json\"\n",
    );
    let serve = serve(&["serve", "--config", config.path().to_str().unwrap()]);
    let gateway = serve.gateway.to_config().unwrap();
    assert_eq!(gateway.max_conns, 1234);
    assert_eq!(gateway.read_wait, Duration::from_secs(300));
    assert!(!gateway.socket.nodelay);
    assert_eq!(gateway.tcp, Some("127.0.0.1:7000".parse().unwrap()));
    assert_eq!(serve.synchronous, "normal");
    assert_eq!(serve.process.log_format, LogFormat::Json);
}

#[test]
fn a_flag_the_file_turns_on_is_turned_off_on_the_command_line() {
    let config = file("no-nodelay = true\n");
    let path = config.path().to_str().unwrap();
    assert!(
        !serve(&["serve", "--config", path])
            .gateway
            .to_config()
            .unwrap()
            .socket
            .nodelay
    );
    let serve = serve(&["serve", "--config", path, "--no-nodelay=false"]);
    assert!(serve.gateway.to_config().unwrap().socket.nodelay);
    assert!(
        !super::tests::serve(&["serve", "--no-nodelay"])
            .gateway
            .to_config()
            .unwrap()
            .socket
            .nodelay
    );
    assert!(
        super::tests::serve(&["serve"])
            .gateway
            .to_config()
            .unwrap()
            .socket
            .nodelay
    );
}

#[test]
fn the_command_line_wins_over_the_file() {
    let config = file("max-conns = 1234\nworkers = 3\n");
    let path = config.path().to_str().unwrap();
    let serve = serve(&["serve", "--max-conns", "99", "--config", path]);
    assert_eq!(serve.gateway.max_conns, 99);
    assert_eq!(serve.gateway.workers, Some(3));
    // Also when the command line gives the default value itself.
    let serve = super::tests::serve(&["serve", "--config", path, "--max-conns=1000000"]);
    assert_eq!(serve.gateway.max_conns, 1_000_000);
}

#[test]
fn an_echo_run_skips_the_keys_only_serve_has() {
    let config = file("data = \"/var/lib/switchboard\"\nnode-id = 7\nmax-conns = 5\n");
    let echo = echo(&["echo", "--config", config.path().to_str().unwrap()]);
    assert_eq!(echo.gateway.max_conns, 5);
}

#[test]
fn unknown_keys_are_refused_with_their_name() {
    let err = parse_serve_with("max-conns = 5\nmax-conn = 6\n").expect_err("a typo is refused");
    let message = err.to_string();
    assert!(message.contains("unknown key `max-conn`"), "{message}");
    for key in ["config", "help"] {
        let err = parse_serve_with(&format!("{key} = \"x\"\n"));
        assert!(
            matches!(
                err,
                Err(CliError::ConfigFile(
                    config_file::ConfigFileError::UnknownKey { .. }
                ))
            ),
            "{key}: {err:?}"
        );
    }
}

#[test]
fn values_of_the_wrong_shape_are_refused() {
    for (text, what) in [
        ("max-conns = [1, 2]\n", "an array"),
        ("max-conns = { value = 1 }\n", "a table"),
    ] {
        let err = parse_serve_with(text).expect_err(text);
        assert!(err.to_string().contains(what), "{text}: {err}");
    }
    let err = parse_serve_with("no-nodelay = \"yes\"\n").expect_err("not a boolean");
    assert!(matches!(err, CliError::FileValue { .. }), "{err:?}");
    assert!(err.to_string().contains("yes"), "{err}");
    let err = parse_serve_with("max-conns = \"lots\"\n").expect_err("not a number");
    assert!(matches!(err, CliError::FileValue { .. }), "{err:?}");
    assert!(err.to_string().contains("lots"), "{err}");
}

#[test]
fn not_toml_and_missing_files_are_refused() {
    let err = parse_serve_with("max-conns = \n");
    assert!(
        matches!(
            err,
            Err(CliError::ConfigFile(
                config_file::ConfigFileError::Syntax { .. }
            ))
        ),
        "{err:?}"
    );
    let err = parse(args(&[
        "serve",
        "--config",
        "/nonexistent/switchboard.toml",
    ]));
    assert!(
        matches!(
            err,
            Err(CliError::ConfigFile(
                config_file::ConfigFileError::Read { .. }
            ))
        ),
        "{err:?}"
    );
}

#[test]
fn proxy_protocol_needs_trusted_proxies() {
    for list in [
        &["serve", "--proxy-protocol"][..],
        &["serve", "--proxy-protocol", "--trusted-proxies", " , "],
    ] {
        assert_eq!(
            serve(list).gateway.to_config().unwrap_err(),
            GatewayArgsError::NoTrustedProxies,
            "{list:?}"
        );
    }
    let config = serve(&[
        "serve",
        "--proxy-protocol",
        "--trusted-proxies",
        "10.0.0.0/8,192.0.2.7",
    ])
    .gateway
    .to_config()
    .unwrap();
    assert_eq!(
        config.proxy_protocol.map(|t| t.to_string()).as_deref(),
        Some("10.0.0.0/8,192.0.2.7/32")
    );
    assert_eq!(
        serve(&["serve"])
            .gateway
            .to_config()
            .unwrap()
            .proxy_protocol,
        None
    );
    assert!(parse(args(&["serve", "--trusted-proxies", "10.0.0.1/8"])).is_err());
}

#[test]
fn proxy_protocol_may_name_its_listeners() {
    use crate::gateway::ProxyListeners;
    let listeners = |list: &[&str]| {
        let config = serve(list).gateway.to_config().unwrap();
        (
            config.proxy_protocol.is_some(),
            config.proxy_header_listeners(),
        )
    };
    let trusted = ["--trusted-proxies", "10.0.0.0/8"];
    let with = |value: &[&'static str]| -> Vec<&'static str> {
        let mut list = vec!["serve"];
        list.extend_from_slice(value);
        list.extend_from_slice(&trusted);
        list
    };
    let (tcp, ws) = (
        ProxyListeners {
            tcp: true,
            ws: false,
        },
        ProxyListeners {
            tcp: false,
            ws: true,
        },
    );
    assert_eq!(
        listeners(&with(&["--proxy-protocol"])),
        (true, ProxyListeners::ALL)
    );
    assert_eq!(
        listeners(&with(&["--proxy-protocol", "all"])),
        (true, ProxyListeners::ALL)
    );
    assert_eq!(
        listeners(&with(&["--proxy-protocol=ws,tcp"])),
        (true, ProxyListeners::ALL)
    );
    assert_eq!(listeners(&with(&["--proxy-protocol", "tcp"])), (true, tcp));
    assert_eq!(listeners(&with(&["--proxy-protocol=ws"])), (true, ws));
    assert_eq!(
        listeners(&with(&["--proxy-protocol=none"])),
        (false, ProxyListeners::NONE)
    );
    assert_eq!(listeners(&with(&[])), (false, ProxyListeners::NONE));
    assert!(parse(args(&["serve", "--proxy-protocol=udp"])).is_err());
    let Command::Serve(serve) =
        parse_serve_with("proxy-protocol = \"ws\"\ntrusted-proxies = \"127.0.0.0/8\"\n")
            .unwrap()
            .command
    else {
        panic!("not serve");
    };
    assert_eq!(
        serve.gateway.to_config().unwrap().proxy_header_listeners(),
        ws
    );
}

#[test]
fn proxy_protocol_comes_from_the_config_file() {
    let Command::Serve(serve) =
        parse_serve_with("proxy_protocol = true\ntrusted_proxies = \"127.0.0.0/8\"\n")
            .unwrap()
            .command
    else {
        panic!("not serve");
    };
    assert_eq!(
        serve
            .gateway
            .to_config()
            .unwrap()
            .proxy_protocol
            .map(|t| t.to_string())
            .as_deref(),
        Some("127.0.0.0/8")
    );
}

#[test]
fn the_admin_options_come_from_the_config_file_or_the_command_line() {
    let text = "admin = \"127.0.0.1:9191\"\nadvertise = [\"ws://chat.example.com/\", \"tcp://10.0.0.7:9000\"]\n";
    let Command::Serve(from_file) = parse_serve_with(text).unwrap().command else {
        panic!("not serve");
    };
    assert_eq!(
        from_file.admin,
        AdminListen(Some("127.0.0.1:9191".parse().unwrap()))
    );
    assert_eq!(
        from_file.advertise,
        ["ws://chat.example.com/", "tcp://10.0.0.7:9000"]
    );
    assert_eq!(serve(&["serve", "--admin", "off"]).admin, AdminListen(None));
    assert_eq!(
        serve(&["serve"]).admin,
        AdminListen(Some("127.0.0.1:9090".parse().unwrap())),
        "loopback by default"
    );
    assert!(parse(args(&["serve", "--admin", "nowhere"])).is_err());
    assert!(parse(args(&["serve", "--advertise", "http://x/"])).is_err());
    let printed = defaults_text();
    for key in [
        "\nadmin = \"127.0.0.1:9090\"\n",
        "\n# admin-token = TOKEN\n",
        "\n# advertise = URL,...\n",
    ] {
        assert!(printed.contains(key), "`switchboard config` prints {key:?}");
    }
}

#[test]
fn the_limits_come_from_flags_and_the_config_file_with_documented_defaults() {
    use crate::gateway::{PerIpLimit, RateLimit};
    let defaults = serve(&["serve"]);
    assert_eq!(
        defaults.request_limit(),
        RateLimit {
            burst: 500,
            per_second: 50,
            grace: 500
        }
    );
    let config = defaults.gateway.to_config().unwrap();
    assert_eq!(
        config.per_ip,
        PerIpLimit {
            max_conns: 0,
            connect_burst: 100,
            connect_per_second: 0
        }
    );
    assert!(
        !config.per_ip.is_on(),
        "per-IP limits are off unless asked for"
    );
    assert_eq!(config.allowed_origins, None);
    assert_eq!(
        echo(&["echo"]).message_limit(),
        RateLimit {
            burst: 500,
            per_second: 0,
            grace: 0
        }
    );

    let Command::Serve(set) = parse_serve_with(
        "request-rate = 7\nrequest-burst = 9\nmax-conns-per-ip = 3\nip-connect-rate = 2\n\
         ip-connect-burst = 4\nallowed-origins = \"https://a.example, https://b.example\"\n",
    )
    .unwrap()
    .command
    else {
        panic!("not serve");
    };
    assert_eq!(
        set.request_limit(),
        RateLimit {
            burst: 9,
            per_second: 7,
            grace: 9
        }
    );
    let config = set.gateway.to_config().unwrap();
    assert_eq!(
        config.per_ip,
        PerIpLimit {
            max_conns: 3,
            connect_burst: 4,
            connect_per_second: 2
        }
    );
    let origins = config.allowed_origins.expect("origins");
    assert!(
        origins.allows(Some("https://b.example")) && !origins.allows(Some("https://c.example"))
    );

    let flags = echo(&["echo", "--message-rate", "4000", "--message-burst", "200"]);
    assert_eq!(
        flags.message_limit(),
        RateLimit {
            burst: 200,
            per_second: 4000,
            grace: 0
        }
    );
    assert!(parse(args(&["serve", "--allowed-origins", "example.com"])).is_err());
}

#[test]
fn the_syn_filter_is_on_by_default_and_set_by_flag_or_file_and_exempts_trusted_proxies() {
    let defaults = serve(&["serve"]).gateway.to_config().unwrap().syn_filter;
    assert!(defaults.enabled);
    assert_eq!(defaults.penalty, Duration::from_secs(10));
    assert!(defaults.exempt.is_none());

    let flags = echo(&[
        "echo",
        "--syn-filter",
        "off",
        "--syn-filter-penalty",
        "90s",
        "--proxy-protocol",
        "--trusted-proxies",
        "10.0.0.0/8",
    ]);
    let config = flags.gateway.to_config().unwrap().syn_filter;
    assert!(!config.enabled);
    assert_eq!(config.penalty, Duration::from_secs(90));
    let exempt = config.exempt.expect("the trusted proxies are exempt");
    assert!(exempt.contains("10.1.2.3".parse().unwrap()));

    for file in ["syn-filter = \"off\"\n", "syn-filter = false\n"] {
        let Command::Serve(set) = parse_serve_with(file).unwrap().command else {
            panic!("not serve");
        };
        assert!(
            !set.gateway.to_config().unwrap().syn_filter.enabled,
            "{file}"
        );
    }
    assert!(parse(args(&["serve", "--syn-filter", "maybe"])).is_err());
}

#[test]
fn the_store_is_sqlite_by_default_or_a_postgres_location_from_the_line_or_the_file() {
    assert_eq!(serve(&["serve"]).store, StoreLocation::Sqlite);
    let url = "postgres://sb:secret@db.internal:5432/switchboard";
    assert_eq!(
        serve(&["serve", "--store", url]).store,
        StoreLocation::Postgres(url.into())
    );
    let libpq = "host=127.0.0.1 port=5433 dbname=sb user=sb";
    assert_eq!(
        serve(&["serve", "--store", libpq]).store,
        StoreLocation::Postgres(libpq.into())
    );
    let Command::Serve(from_file) = parse_serve_with(&format!("store = \"{url}\"\n"))
        .unwrap()
        .command
    else {
        panic!("not serve");
    };
    assert_eq!(from_file.store, StoreLocation::Postgres(url.into()));
    for bad in ["mysql://x/y", "postgres://h:port/db", "data/switchboard.db"] {
        let error = parse(args(&["serve", "--store", bad])).unwrap_err();
        assert!(error.to_string().contains("--store"), "{bad}: {error}");
    }
}

#[test]
fn the_commit_delay_comes_from_the_file_or_the_command_line_and_is_bounded() {
    assert_eq!(serve(&["serve"]).commit_delay, Duration::from_millis(2));
    assert_eq!(
        serve(&["serve", "--commit-delay", "0"]).commit_delay,
        Duration::ZERO
    );
    let Command::Serve(from_file) = parse_serve_with("commit-delay = \"3ms\"\n")
        .expect("a commit delay in the file")
        .command
    else {
        panic!("not serve");
    };
    assert_eq!(from_file.commit_delay, Duration::from_millis(3));
    let error = parse(args(&["serve", "--commit-delay", "50ms"]))
        .expect_err("a delay past the bound")
        .to_string();
    assert!(error.contains("at most 10ms"), "{error}");
}

#[test]
fn the_logic_thread_is_auto_own_or_reactor_from_the_file_or_the_command_line() {
    use crate::logic::LogicThread;
    let thread = |args: &ServeArgs| args.logic_thread.parse::<LogicThread>();
    assert_eq!(thread(&serve(&["serve"])), Ok(LogicThread::Auto));
    assert_eq!(
        thread(&serve(&["serve", "--logic-thread", "auto"])),
        Ok(LogicThread::Auto)
    );
    assert_eq!(
        thread(&serve(&["serve", "--logic-thread", "reactor"])),
        Ok(LogicThread::Reactor)
    );
    assert_eq!(
        thread(&serve(&["serve", "--logic-thread", "own"])),
        Ok(LogicThread::Own)
    );
    let Command::Serve(from_file) = parse_serve_with("logic-thread = \"reactor\"\n")
        .expect("a logic thread in the file")
        .command
    else {
        panic!("not serve");
    };
    assert_eq!(thread(&from_file), Ok(LogicThread::Reactor));
    let error = parse(args(&["serve", "--logic-thread", "both"]))
        .expect_err("neither auto, own nor reactor")
        .to_string();
    assert!(error.contains("--logic-thread"), "{error}");
}

/// Where the core runs, as `serve` resolves it at the start from its arguments: the
/// `--logic-thread` choice beside the reactors `--workers` asks for.
fn logic_thread_of(args: ServeArgs) -> crate::logic::LogicThread {
    let workers = args.gateway.to_config().expect("a gateway").workers;
    let choice: crate::logic::LogicThread = args.logic_thread.parse().expect("a choice");
    choice.resolve(workers)
}

#[test]
fn by_default_the_logic_core_runs_on_the_reactors_thread_with_one_reactor_and_its_own_with_more() {
    use crate::logic::LogicThread::{Own, Reactor};
    let resolved = |list: &[&str]| logic_thread_of(serve(list));
    assert_eq!(resolved(&["serve", "--workers", "1"]), Reactor);
    assert_eq!(resolved(&["serve", "--workers", "2"]), Own);
    assert_eq!(resolved(&["serve", "--workers", "8"]), Own);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let expected = if cores == 1 { Reactor } else { Own };
    assert_eq!(
        resolved(&["serve"]),
        expected,
        "{cores} cores, so as many reactors"
    );
    // An explicit choice wins where it can apply; `reactor` cannot beside two reactors.
    assert_eq!(
        resolved(&["serve", "--workers", "1", "--logic-thread", "own"]),
        Own
    );
    assert_eq!(
        resolved(&["serve", "--workers", "2", "--logic-thread", "reactor"]),
        Own
    );
    // The same from the config file.
    for (text, expected) in [
        ("workers = 1\n", Reactor),
        ("workers = 2\n", Own),
        ("workers = 1\nlogic-thread = \"auto\"\n", Reactor),
        ("workers = 1\nlogic-thread = \"own\"\n", Own),
    ] {
        let Command::Serve(from_file) = parse_serve_with(text).expect(text).command else {
            panic!("not serve");
        };
        assert_eq!(logic_thread_of(*from_file), expected, "{text}");
    }
}
