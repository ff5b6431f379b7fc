"""Small pieces every app may use and that know no app: the WebSocket JSON base, queueing on commit.

Nothing here imports an app, the actions layer or the project wiring (.importlinter).
"""
