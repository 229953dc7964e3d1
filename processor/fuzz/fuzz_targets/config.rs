//! The pipeline config loader: any text gives a config or an error naming the file, never a
//! panic, and an engine starts on every config it accepts.
#![no_main]

use libfuzzer_sys::fuzz_target;
use stockpulse_processor::config::PipelineConfig;

fuzz_target!(|text: &str| {
    match PipelineConfig::from_text(text, "fuzz.yaml") {
        Ok(config) => {
            // Whatever the processor accepted, it can run an engine on.
            let _engine = stockpulse_processor::engine::Engine::new(&config, 0);
        }
        Err(error) => assert!(error.to_string().contains("fuzz.yaml"), "{error}"),
    }
});
