//! `schema`: prints the event JSON Schema (the source of `docs/event.schema.json`).

pub fn run() -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(&crate::event::event_json_schema())?);
    Ok(())
}
