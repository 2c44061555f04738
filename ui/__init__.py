"""The Gradio UI (next step): talks to the backend over HTTP only, never imports torch."""
