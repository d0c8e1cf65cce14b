//! A terminal chat client on the SDK, for trying a server by hand.
//!
//! ```sh
//! cargo run --release -- serve --data ./data &
//! TOKEN=$(cargo run --release -- token --user alice --data ./data)
//! cargo run -p switchboard-sdk --example chat -- "$TOKEN" tcp://127.0.0.1:9000 ws://127.0.0.1:9001/
//! ```
//!
//! Type `bob hello there` to send "hello there" to bob; incoming messages (live and synced
//! from while you were offline) are printed as they arrive. End with Ctrl-D.

use std::io::BufRead;
use std::process::ExitCode;

use switchboard_sdk::{Client, ClientConfig, Event, Target};

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let (Some(token), endpoints) = (args.next(), args.collect::<Vec<_>>()) else {
        eprintln!("usage: chat TOKEN ENDPOINT... (e.g. tcp://127.0.0.1:9000 ws://127.0.0.1:9001/)");
        return ExitCode::from(2);
    };
    let endpoints = if endpoints.is_empty() {
        vec!["tcp://127.0.0.1:9000".to_owned()]
    } else {
        endpoints
    };
    let config = match ClientConfig::new(&endpoints, token) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("chat: {e}");
            return ExitCode::from(2);
        }
    };
    let client = match Client::connect(config) {
        Ok(client) => client,
        Err(e) => {
            eprintln!("chat: cannot connect: {e}");
            return ExitCode::FAILURE;
        }
    };
    let me = client.login().user.to_string();
    println!("logged in as {me} via {}", client.login().endpoint);

    let events = client.events().clone();
    std::thread::spawn(move || {
        for event in events {
            match event {
                Event::Message(message) => {
                    let to = match &message.target {
                        Target::Direct(user) => user.to_string(),
                        Target::Group(id) => format!("group {id}"),
                    };
                    let body = String::from_utf8_lossy(&message.body);
                    println!("[{}] {} -> {to}: {body}", message.msg_id, message.from);
                }
                Event::SyncDone { delivered } if delivered > 0 => {
                    println!("({delivered} messages synced from while you were away)")
                }
                Event::Kicked { text, .. } => println!("kicked: {text}"),
                Event::Reconnected { endpoint } => println!("(reconnected via {endpoint})"),
                Event::Disconnected { error } => println!("(disconnected: {error}; reconnecting)"),
                Event::Stopped { reason } => {
                    println!("(stopped: {reason:?})");
                    break;
                }
                _ => {}
            }
        }
    });

    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        let Some((to, body)) = line.trim().split_once(' ') else {
            if !line.trim().is_empty() {
                eprintln!("type: USER MESSAGE");
            }
            continue;
        };
        match client.send(to, body.to_owned()) {
            Ok(ack) => println!("(stored as {})", ack.msg_id),
            Err(e) => eprintln!("not sent: {e}"),
        }
    }
    client.close();
    ExitCode::SUCCESS
}
