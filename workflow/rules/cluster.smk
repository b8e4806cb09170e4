# Cluster execution (profiles/slurm): what stays on the submitting host. Under a cluster executor
# every job is a cluster job except these `localrules`; under the local executor nothing here
# changes anything.
#  - tables and figures: seconds of pandas/matplotlib, not worth a queue wait;
#  - every timing job of an adb or SSH target: the phone is plugged into the submitting host, the
#    board is reached from it. A rule is local for all its jobs or none, so each timing rule gets
#    an `_attached` twin (`use rule`: the same rule) whose `target` wildcard only matches adb/SSH
#    targets, preferred over the original by `ruleorder`, and local. Host targets keep the
#    original rule, which the profile sends to a whole node.


localrules:
    all,
    base_summary,
    table1,
    table2,
    figures_paper1,
    p2_sweep_figures,
    p2_report,
    p2_backends,
    paper2,
    pareto_target,
    pareto,


ATTACHED_TARGETS = [t for t, s in CONFIGURED_TARGETS.items() if s.transport != "local"]
ATTACHED_RE = "|".join(re.escape(t) for t in ATTACHED_TARGETS) or "$^"


use rule latency_compare as latency_compare_attached with:
    wildcard_constraints:
        target=ATTACHED_RE,


use rule app_fps as app_fps_attached with:
    wildcard_constraints:
        **{**TIMING_CONSTRAINTS, "target": ATTACHED_RE},


use rule p2_sweep_time as p2_sweep_time_attached with:
    wildcard_constraints:
        layer=P2_LAYER_RE,
        target=ATTACHED_RE,


use rule p2_whole_time as p2_whole_time_attached with:
    wildcard_constraints:
        target=ATTACHED_RE,


use rule p2_backends_time as p2_backends_time_attached with:
    wildcard_constraints:
        target=ATTACHED_RE,


ruleorder: latency_compare_attached > latency_compare
ruleorder: app_fps_attached > app_fps
ruleorder: p2_sweep_time_attached > p2_sweep_time
ruleorder: p2_whole_time_attached > p2_whole_time
ruleorder: p2_backends_time_attached > p2_backends_time


localrules:
    latency_compare_attached,
    app_fps_attached,
    p2_sweep_time_attached,
    p2_whole_time_attached,
    p2_backends_time_attached,
