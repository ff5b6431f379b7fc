"""How the app is deployed: everything that runs around it rather than in it (nginx today).

Nothing here is imported by the app; these modules read the app's settings and render or start
what sits in front of it.
"""
