"""The one home of state changes that cross apps (in the spirit of Zulip's zerver/actions).

Views, the API, WebSocket consumers and Celery tasks call these functions; the apps' own modules
never call up into them. Each action makes its change and records the follow-up work (the graph
outbox row, the summary workflow run) in the same transaction, and that work is started only after
commit, so nothing it does can undo the change. The layering is checked by import-linter
(.importlinter) in CI.
"""
