"""The Gradio web UI: talks to the backend over HTTP only, never imports torch."""
