fn main() -> std::process::ExitCode {
    stockpulse_processor::cli::main()
}
