"""The behaviours a session can run: greeting, agent, transcript sinks, audio in and out."""
