"""HTTP layer of /tasks/scheduled/periodic-tasks/: parse, call the service layer, serialize."""

from __future__ import annotations

from functools import partial
from itertools import islice
from typing import Any

from flask import request
from flask.views import MethodView

from shared.api import Blueprint
from shared.auth import authorize, current_principal
from shared.core_client import Caller
from shared.crud import in_session, in_transaction
from shared.events.envelope import iso
from shared.listing import paginate

from ..container import scheduling
from ..cron import InvalidCron, normalize, slots
from ..cron_description import describe
from ..run_views import run_history
from ..zones import accepted_zones, check_zone, server_zone, zone_info
from . import optimizer, queries, service
from .schemas import (
    AnalysisArgs,
    CronCheckSchema,
    CronTemplatesSchema,
    ExecuteReadySchema,
    OptimizeResultSchema,
    OptimizeSchema,
    PerformanceAnalysisSchema,
    PeriodicTaskCreateSchema,
    PeriodicTaskListArgs,
    PeriodicTaskPageSchema,
    PeriodicTaskSchema,
    PeriodicTaskUpdateSchema,
    ReadyForExecutionSchema,
    RunListArgs,
    RunNowSchema,
    RunPageSchema,
    ScheduleStatsSchema,
    TimezoneArgs,
    TimezoneInfoSchema,
    ValidateCronSchema,
)
from .templates import cron_templates

blp = Blueprint(
    "periodic_tasks",
    __name__,
    url_prefix="/periodic-tasks",
    description="Periodic tasks: cron schedules in their own time zone, with misfire and overlap policies.",
)


def current_caller() -> Caller:
    """The caller's credentials, forwarded to core so that it applies the caller's own scope."""
    return Caller.of(request.headers)


@blp.route("/")
class PeriodicTasks(MethodView):
    @blp.arguments(PeriodicTaskListArgs, location="query")
    @blp.response(200, PeriodicTaskPageSchema)
    def get(self, args: dict[str, Any]) -> dict[str, Any]:
        """List periodic tasks"""
        return in_session(
            scheduling(), paginate, queries.periodic_task_list(current_principal().brand_id, args), args
        )

    @blp.arguments(PeriodicTaskCreateSchema)
    @blp.response(201, PeriodicTaskSchema)
    def post(self, fields: dict[str, Any]) -> Any:
        """Create a periodic task from a base_task template or a task_type"""
        container = scheduling()
        create = partial(service.create_periodic_task, container)
        return in_transaction(container, create, current_principal(), fields, current_caller())


@blp.route("/<int:pk>/")
class PeriodicTaskById(MethodView):
    @blp.response(200, PeriodicTaskSchema)
    def get(self, pk: int) -> Any:
        """Get a periodic task"""
        return in_session(scheduling(), service.get_periodic_task, current_principal().brand_id, pk)

    @blp.arguments(PeriodicTaskUpdateSchema)
    @blp.response(200, PeriodicTaskSchema)
    def put(self, fields: dict[str, Any], pk: int) -> Any:
        """Update a periodic task (next_run_at is recomputed)"""
        return _update(pk, fields)

    @blp.arguments(PeriodicTaskUpdateSchema)
    @blp.response(200, PeriodicTaskSchema)
    def patch(self, fields: dict[str, Any], pk: int) -> Any:
        """Update some fields of a periodic task"""
        return _update(pk, fields)

    @blp.response(204)
    def delete(self, pk: int) -> None:
        """Delete a periodic task (its run history goes with it)"""
        in_transaction(scheduling(), service.delete_periodic_task, current_principal().brand_id, pk)


def _update(pk: int, fields: dict[str, Any]) -> Any:
    container = scheduling()
    update = partial(service.update_periodic_task, container)
    return in_transaction(container, update, current_principal().brand_id, pk, fields)


@blp.route("/<int:pk>/toggle/")
class Toggle(MethodView):
    @blp.response(200, PeriodicTaskSchema)
    def post(self, pk: int) -> Any:
        """Flip is_active (next_run_at is recomputed from now)"""
        container = scheduling()
        return in_transaction(container, partial(service.toggle, container), current_principal().brand_id, pk)


@blp.route("/<int:pk>/execute-now/")
class ExecuteNow(MethodView):
    @blp.answers(RunNowSchema)
    def post(self, pk: int) -> Any:
        """Start a run now, without moving the schedule; answers with core's task"""
        return service.execute_now(scheduling(), current_principal(), pk, current_caller())


@blp.route("/<int:pk>/runs/")
class Runs(MethodView):
    @blp.arguments(RunListArgs, location="query")
    @blp.response(200, RunPageSchema)
    def get(self, args: dict[str, Any], pk: int) -> dict[str, Any]:
        """Run history: planned time, fire time, created task, outcome, duration"""
        brand_id = current_principal().brand_id
        return in_session(scheduling(), run_history, service.get_periodic_task, brand_id, pk, args)


@blp.route("/ready-for-execution/")
class ReadyForExecution(MethodView):
    @blp.answers(ReadyForExecutionSchema)
    def get(self) -> dict[str, Any]:
        """Active schedules whose next_run_at has passed"""
        found = service.ready_for_execution(scheduling(), current_principal().brand_id)
        return {"count": found["count"], "tasks": PeriodicTaskSchema(many=True).dump(found["tasks"])}


@blp.route("/execute-ready/")
class ExecuteReady(MethodView):
    @blp.answers(ExecuteReadySchema)
    def post(self) -> dict[str, Any]:
        """Fire every due schedule of the brand now (a slot fires once, whoever gets to it)"""
        return service.execute_ready(scheduling(), current_principal(), current_caller())


@blp.route("/validate-cron/")
class ValidateCron(MethodView):
    @blp.answers(CronCheckSchema)
    @blp.arguments(ValidateCronSchema)
    def post(self, body: dict[str, Any]) -> dict[str, Any]:
        """Check an expression: plain-English description and the next executions"""
        tz = check_zone(body["timezone"])
        try:
            expression = normalize(body["cron_expression"])
        except InvalidCron as error:
            return {"is_valid": False, "error": str(error), "error_code": "INVALID_CRON_EXPRESSION"}
        upcoming = islice(slots(expression, tz, scheduling().now()), body["count"])
        return {
            "is_valid": True,
            "cron_expression": body["cron_expression"],
            "timezone": tz,
            "description": describe(expression),
            "next_executions": [iso(moment) for moment in upcoming],
        }


@blp.route("/cron-templates/")
class CronTemplates(MethodView):
    @blp.answers(CronTemplatesSchema)
    def get(self) -> dict[str, Any]:
        """Common cron expressions with names and descriptions"""
        return cron_templates()


@blp.route("/stats/")
class Stats(MethodView):
    @blp.answers(ScheduleStatsSchema)
    def get(self) -> dict[str, Any]:
        """Schedules active/inactive, runs and success rates over 24 h and 7 days, due soon"""
        container = scheduling()
        return in_session(container, queries.stats, current_principal().brand_id, container.now())


@blp.route("/performance-analysis/")
class PerformanceAnalysis(MethodView):
    @blp.answers(PerformanceAnalysisSchema)
    @blp.arguments(AnalysisArgs, location="query")
    def get(self, args: dict[str, Any]) -> dict[str, Any]:
        """Per schedule: runs, success rate, duration, start delay average and p95, overlaps"""
        container = scheduling()
        return in_session(
            container,
            queries.performance_analysis,
            current_principal().brand_id,
            container.now(),
            args["days"],
        )


@blp.route("/timezone-info/")
class TimezoneInfo(MethodView):
    @blp.answers(TimezoneInfoSchema)
    @blp.arguments(TimezoneArgs, location="query")
    def get(self, args: dict[str, Any]) -> dict[str, Any]:
        """The server's zone, the accepted zones, and a zone's offset and next DST change"""
        body: dict[str, Any] = {
            "server_timezone": server_zone(),
            "accepted_timezones": list(accepted_zones()),
        }
        if args.get("timezone") is not None:
            body["timezone_info"] = zone_info(check_zone(args["timezone"]), scheduling().now())
        return body


@blp.route("/optimize-schedules/")
class OptimizeSchedules(MethodView):
    @blp.answers(OptimizeResultSchema)
    @blp.arguments(OptimizeSchema, required=False)
    def post(self, options: dict[str, Any]) -> dict[str, Any]:
        """Propose staggered expressions for crowded minutes; apply them when dry_run is false (admin)"""
        options = options or OptimizeSchema().load({})
        principal = current_principal()
        if not options["dry_run"]:
            authorize("periodic_tasks", "optimize-schedules:apply")
        container = scheduling()
        return in_transaction(container, optimizer.optimize, principal.brand_id, container.now(), options)
