"""A Microsoft Graph simulator for the PSTN and Direct Routing call-log functions (tests, local runs).

    with GraphSimulator(seed=1, rows_per_day=2500) as sim:
        requests.get(f"{sim.url}/v1.0/communications/callRecords/getPstnCalls("
                     "fromDateTime=2024-05-01,toDateTime=2024-05-02)", headers={"Authorization": "Bearer x"})

Run standalone with `python -m devstack.graphsim --port 8765`.
"""
from .server import GraphSimulator

__all__ = ["GraphSimulator"]
