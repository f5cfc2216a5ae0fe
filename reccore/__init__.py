"""The bottom layer: what every other package uses -- the work directory, the MLflow registry/tracking
client, config loading into typed dataclasses, and the constants every layer shares (engine roles,
event codes). It imports no other package of this project (the layers contract in `.importlinter`)."""
