"""The web console: playbooks, accounts, template previews, tasks and the outbox in a browser.

Server-rendered HTML (Jinja, autoescaped: synced data is hostile), inline SVG charts and no script
at all, served by the daemon's HTTP application under /console/ or on `console.listen`. `auth`
(users, sessions, CSRF, throttling) and `queries` know nothing of HTTP; `app` and `views` are the
only modules that import Starlette.
"""
