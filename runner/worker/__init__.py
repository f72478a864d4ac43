"""The worker: takes tasks off the queue and runs each in a sandbox through the Executor port."""
