"""Task pages over HTTP: the runner's side for people (see docs/task-pages.md).

`app` builds the aiohttp application, `server.WebServer` serves it next to the gRPC API, `share` signs
and checks share links, `links.PageLinks` is what the gRPC API uses to hand out page URLs and share
links. Nothing here imports gRPC: the pages speak `TaskService` and the domain records.
"""
