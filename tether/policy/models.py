"""Policy file models (pydantic v2). Catalog-dependent checks (providers, scopes) live in the loader."""

import re
import zoneinfo
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import time
from typing import Annotated, Any, Literal, get_args

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)
from pydantic.json_schema import WithJsonSchema

from tether.policy.patterns import PathTemplate, parse_host_pattern, validate_glob

# Providers whose routes carry {owner}/{repo} and so support `repositories` narrowing.
REPOSITORY_NARROWING_PROVIDERS = frozenset({"github"})

_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$"
_TIME_PATTERN = r"^([01][0-9]|2[0-3]):[0-5][0-9]$"
_MODEL_CONFIG = ConfigDict(extra="forbid", strict=True, frozen=True)

MethodOrAny = Literal["*", "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
_METHODS_SCHEMA = {
    "anyOf": [
        {"const": "*"},
        {"type": "array", "minItems": 1, "items": {"enum": list(get_args(MethodOrAny))}},
    ]
}
Day = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
DAYS: tuple[Day, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def _check_name(value: str) -> str:
    if not re.fullmatch(_NAME_PATTERN, value):
        raise ValueError(
            f"{value!r} is not a valid name: use letters, digits, '.', '_', ':' or '-' "
            "(starting with a letter or digit, at most 128 characters)"
        )
    return value


def _check_host_pattern(value: str) -> str:
    parse_host_pattern(value)
    return value


def _check_path_template(value: str) -> str:
    PathTemplate(value)
    return value


def _check_repository_glob(value: str) -> str:
    owner, slash, repo = value.partition("/")
    if not slash or not owner or not repo or "/" in repo:
        raise ValueError(f"repository {value!r} must look like 'owner/repo' (globs allowed: 'acme/web-*')")
    return validate_glob(value)


def _methods_from_yaml(value: Any) -> Any:
    """Accept `"*"` for any method and lower-case method names."""
    if value == "*":
        return ["*"]
    if isinstance(value, list):
        return [item.upper() if isinstance(item, str) else item for item in value]
    return value


def _time_from_yaml(value: Any) -> Any:
    # YAML 1.1 reads an unquoted 19:00 as the base-60 integer 1140.
    if isinstance(value, int) and not isinstance(value, bool):
        raise ValueError('write times in quotes, e.g. "19:00" (YAML reads an unquoted 19:00 as a number)')
    return value


def _check_clock_time(value: str) -> str:
    if not re.fullmatch(_TIME_PATTERN, value):
        raise ValueError(f'{value!r} is not a time of day: expected "HH:MM", 00:00 to 23:59')
    return value


Name = Annotated[str, AfterValidator(_check_name), Field(json_schema_extra={"pattern": _NAME_PATTERN})]
Glob = Annotated[str, AfterValidator(validate_glob)]
HostPatternText = Annotated[str, AfterValidator(_check_host_pattern)]
PathTemplateText = Annotated[str, AfterValidator(_check_path_template)]
RepositoryGlob = Annotated[str, AfterValidator(_check_repository_glob)]
ClockTime = Annotated[
    str,
    BeforeValidator(_time_from_yaml),
    AfterValidator(_check_clock_time),
    Field(json_schema_extra={"pattern": _TIME_PATTERN}),
]


class ProviderGrant(BaseModel):
    """What an agent may do with one provider, and how its token is issued."""

    model_config = _MODEL_CONFIG

    credential: Name = Field(
        description="Name of a credential defined in tether.yaml that tokens are made from."
    )
    scopes: list[str] = Field(
        description="Scopes granted, from the provider catalog's vocabulary ('<resource>:<read|write>', "
        "e.g. repo:read, issues:write, chat:write). write implies read. An agent may ask for less "
        "(X-Tether-Scopes) but never gets more."
    )
    ttl_seconds: int = Field(
        default=3600, ge=60, le=86400, description="Lifetime of minted tokens in seconds (60..86400)."
    )
    repositories: list[RepositoryGlob] | None = Field(
        default=None,
        description="GitHub only: restrict calls on /repos/{owner}/{repo}/... routes to these "
        "'owner/repo' globs (case-insensitive). Omit to allow every repository the credential can reach.",
    )
    tag_upstream: bool = Field(
        default=True,
        description="Send X-Tether-Agent/Run/Task headers and a tether User-Agent suffix to this provider, "
        "so its audit log attributes the call.",
    )


class Rule(BaseModel):
    """An explicit allow or deny on method + host + path. Deny rules beat allow rules; within each
    action the first matching rule wins. Allow rules open hosts outside `egress` and provider routes
    the catalog does not know, but never widen a provider grant (scopes, repositories)."""

    model_config = _MODEL_CONFIG

    name: Name = Field(description="Rule name, unique within the policy; recorded as decision.rule.")
    action: Literal["allow", "deny"] = Field(description="allow or deny.")
    methods: Annotated[
        list[MethodOrAny], BeforeValidator(_methods_from_yaml), WithJsonSchema(_METHODS_SCHEMA)
    ] = Field(
        default=["*"],
        min_length=1,
        description='HTTP methods the rule applies to, or "*" for any (the default).',
    )
    host: HostPatternText | None = Field(
        default=None,
        description="Host the rule applies to: exact (api.github.com) or wildcard (*.example.com), "
        "optional :port. Omit for any host.",
    )
    path: PathTemplateText = Field(
        default="/**",
        description="Path template: literal segments, {param} for one segment, trailing /** for any "
        "suffix. Default /** (any path).",
    )


class Hours(BaseModel):
    """When the agent may work. Outside the window calls are denied or flagged."""

    model_config = _MODEL_CONFIG

    timezone: str = Field(description="IANA time zone of the window, e.g. Europe/Berlin or UTC.")
    days: list[Day] = Field(
        default=list(DAYS), min_length=1, description="Days the window starts on (default: every day)."
    )
    start: ClockTime = Field(description='Start of the window, "HH:MM" (quoted), inclusive.')
    end: ClockTime = Field(
        description='End of the window, "HH:MM" (quoted), exclusive. Earlier than start means an '
        "overnight window that ends on the next day."
    )
    outside: Literal["deny", "flag"] = Field(
        default="deny", description="Outside the window: deny the call, or allow it and flag the event."
    )

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"unknown time zone {value!r} (use an IANA name such as Europe/Berlin)"
            ) from None
        return value

    @model_validator(mode="after")
    def _non_empty_window(self) -> "Hours":
        if self.start == self.end:
            raise ValueError("start and end are equal: the window would be empty")
        return self

    @property
    def start_time(self) -> time:
        return time.fromisoformat(self.start)

    @property
    def end_time(self) -> time:
        return time.fromisoformat(self.end)


class Policy(BaseModel):
    """A tether policy: which agents it covers and what they may call."""

    model_config = _MODEL_CONFIG

    id: Name = Field(description="Policy id, unique across all loaded files; recorded as policy_id.")
    agents: list[Glob] = Field(
        min_length=1,
        description="Agent names this policy applies to (fnmatch globs, case-sensitive). The first "
        "policy, in file order, whose globs match the agent applies.",
    )
    mode: Literal["enforce", "report"] = Field(
        default="enforce",
        description="enforce: denied calls get 403. report: every call goes through and its event "
        "records what enforce would have done.",
    )
    egress: list[HostPatternText] = Field(
        default=[],
        description="Non-provider hosts the agent may call: exact (status.example.com), wildcard "
        "(*.example.com: subdomains, not the apex) or IP address, optional :port (default: any port). "
        "Only an exact entry may resolve to a private address.",
    )
    providers: dict[str, ProviderGrant] = Field(
        default={},
        description="Brokered providers by catalog name (github, slack, google): credential, scopes, "
        "token lifetime and narrowing.",
    )
    rules: list[Rule] = Field(default=[], description="Explicit allow/deny rules on method + host + path.")
    hours: Hours | None = Field(default=None, description="Optional working-hours window.")


class PolicyList(BaseModel):
    """A file holding several policies."""

    model_config = _MODEL_CONFIG

    policies: list[Policy] = Field(min_length=1, description="The policies, in priority order.")


@dataclass(frozen=True)
class PolicySet:
    """Validated policies in priority order (file order, then order within the file)."""

    policies: tuple[Policy, ...]
    origins: Mapping[str, str] = field(default_factory=dict)  # policy id -> "file:line"
