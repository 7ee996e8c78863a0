"""The core of the call-log collector: everything the Functions app does, with no dependency on azure.functions.

Laid out by stage, the way a row travels (README, "How a row travels"): instants, config, then graph, stores
and odata, then derive, collect and api, and cli and telemetry on top. tests/test_layout.py holds the rule
that imports only run down that list."""
