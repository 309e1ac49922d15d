"""tts_ui: offline benchmark corpus (human en->fr UI text, offline TTS, simulated channels)."""
