//! `p2p-server`: see [`p2p_server::cli`].

fn main() -> std::process::ExitCode {
    p2p_server::cli::main()
}
