"""Entry point of the Functions app (Python v2 programming model): registers the two blueprints."""
import azure.functions as func

from collect_timer import bp as collect_blueprint
from query_http import bp as query_blueprint
from shared.telemetry import start_telemetry

start_telemetry()
app = func.FunctionApp()
app.register_functions(collect_blueprint)
app.register_functions(query_blueprint)
