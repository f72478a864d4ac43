"""Pull requests from a task's diff: commit it on the task's base, push a branch, open a GitHub PR.

`service.PullRequestService` is the entry point (the gRPC `CreatePullRequest` call); `git_work` does the
Git side in a private temporary repository, `github` the REST call, `settings` the operator's knobs.
Nothing here touches the workspace the task ran on: every step works on objects fetched from the remote
and the task's stored `diff.patch`. See docs/pull-requests.md.
"""
