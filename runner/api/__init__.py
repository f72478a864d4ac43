"""The gRPC adapter: the only code that imports the generated stubs in `runner._proto`."""
