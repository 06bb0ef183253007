"""Policy: load → validate (located errors) → compile to predicates; bundled packs."""

from lumyn.policy.bundled import BUNDLED_PACKS, bundled_policy_path, resolve_template
from lumyn.policy.compile import PolicyInvalid, check_policy, compile_policy, load_policy
from lumyn.policy.load import Problem
from lumyn.policy.model import EVALUATION_ORDER, STAGES, CompiledPolicy, CompiledRule

__all__ = [
    "BUNDLED_PACKS",
    "EVALUATION_ORDER",
    "STAGES",
    "CompiledPolicy",
    "CompiledRule",
    "PolicyInvalid",
    "Problem",
    "bundled_policy_path",
    "check_policy",
    "compile_policy",
    "load_policy",
    "resolve_template",
]
