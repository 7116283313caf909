"""Activities: the engine's only contact with the world (messages, work queues, documents)."""
