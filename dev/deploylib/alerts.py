"""The alert rules: promtool, and only metrics the code emits."""

import re

from .common import ROOT, Results, output_problems, run
from .tools import promtool


def check_alerts(results: Results) -> None:
    import yaml
    rules = ROOT / "deploy" / "prometheus" / "alerts.yml"
    results.check("alert rules: promtool check rules", output_problems(run([promtool(), "check", "rules", rules])))
    # Each alert fires on the series it is written for, and not on healthy ones.
    tests = rules.with_name("alerts_test.yml")
    results.check("alert rules: promtool test rules (alerts_test.yml)",
                  output_problems(run([promtool(), "test", "rules", tests.name], cwd=tests.parent)))
    emitted = set()
    for source in (ROOT / "crates").rglob("*.rs"):
        emitted |= set(re.findall(r'(?:counter|gauge|histogram)!\(\s*"(order_platform_[a-z0-9_]+)"',
                                  source.read_text()))
    problems = []
    for group in yaml.safe_load(rules.read_text())["groups"]:
        for rule in group["rules"]:
            for metric in sorted(set(re.findall(r"\border_platform_[a-z0-9_]+", rule["expr"]))):
                base = re.sub(r"_(bucket|sum|count)$", "", metric)
                if metric not in emitted and base not in emitted:
                    problems.append(f"{rule['alert']}: {metric} is not emitted by any crate")
    results.check("alert rules: every metric is one the code emits", problems)

