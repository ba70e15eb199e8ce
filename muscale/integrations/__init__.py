"""muscale.Recorder as a callback of other people's trainers, each an optional extra imported
only when its module is: `muscale.integrations.hf` (Hugging Face Trainer) and
`muscale.integrations.lightning` (Lightning)."""
