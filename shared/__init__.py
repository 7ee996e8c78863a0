"""The core of the call-log collector: everything the Functions app does, with no dependency on azure.functions."""
