"""Quality gates: the project rules (rules as code over dbt's manifest) and the SQL linter.

`dataops lint rules` parses the project (`dbt parse`, in-memory lint target), runs every rule of
`rules.py` and applies the reviewed exceptions of `project_rules_exceptions.yml`;
`dataops lint sql` runs sqlfluff with the dbt templater on the same lint target. `make lint` and
the pre-commit hooks call these.
"""

from dataops.rules.exceptions import Outcome, apply_exceptions, load_exceptions
from dataops.rules.rules import RULES, Violation, run_rules

__all__ = ["RULES", "Outcome", "Violation", "apply_exceptions", "load_exceptions", "run_rules"]
