fn main() {
    eprintln!("switchboard: the gateway subcommands land with the reactor (issue #3)");
    std::process::exit(2);
}
