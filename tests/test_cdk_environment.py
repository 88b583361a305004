"""Every environment variable the stack sets on a function is read by the package: a field of one
of its settings classes (`lambda_handler/settings.py`), or a variable of a library the functions
run. A renamed setting cannot leave the stack setting a variable nothing reads."""

import inspect

import pytest
from pydantic_settings import BaseSettings

from cdk import environment
from lambda_handler import settings as package_settings
from lambda_handler.settings import ApiSettings, env_name
from tests.cdk_support import synthesized

# Read by the libraries the functions run, not by the package's settings: GDAL's configuration
# (GDAL_*, CPL_*, VSI_*), PROJ's data directory, the AWS SDK and runtime, the interpreter.
NON_PACKAGE_PREFIXES = ("GDAL_", "CPL_", "VSI_", "PROJ_", "AWS_", "PYTHON")


def _settings_classes() -> list[type[BaseSettings]]:
    return [
        cls
        for _, cls in inspect.getmembers(package_settings, inspect.isclass)
        if issubclass(cls, BaseSettings) and cls.__module__ == package_settings.__name__
    ]


def _package_variables() -> dict[str, tuple[type[BaseSettings], str]]:
    """Every variable the package reads: name -> (settings class, field)."""
    return {
        env_name(cls, field): (cls, field)
        for cls in _settings_classes()
        for field in cls.model_fields
    }


def _function_environments() -> dict[str, dict]:
    """`variant/logical id` -> the function's environment, for every synthesized variant."""
    found = {}
    for variant, template in synthesized().items():
        for logical_id, resource in template["Resources"].items():
            if resource["Type"] == "AWS::Lambda::Function":
                variables = resource["Properties"].get("Environment", {}).get("Variables", {})
                found[f"{variant}/{logical_id}"] = variables
    return found


def test_every_variable_the_stack_sets_is_read_by_the_package_or_a_library():
    package = _package_variables()
    environments = _function_environments()
    assert len(environments) >= 9  # three functions in each of the three variants
    unread = {
        (function, name)
        for function, variables in environments.items()
        for name in variables
        if name not in package and not name.startswith(NON_PACKAGE_PREFIXES)
    }
    assert not unread
    names = {name for variables in environments.values() for name in variables}
    # The names the stack module derives are the ones in the template.
    derived = {value for key, value in vars(environment).items() if key.isupper()}
    assert derived <= names and derived <= set(package)


def test_literal_values_parse_as_their_settings_declare(monkeypatch):
    """What the stack writes as plain strings (JSON lists, numbers, booleans) is accepted by the
    settings class that reads it; values CloudFormation resolves at deploy time are skipped."""
    package = _package_variables()
    checked = 0
    for variables in _function_environments().values():
        for name, value in variables.items():
            if name not in package or not isinstance(value, str):
                continue
            cls, field = package[name]
            monkeypatch.setenv(name, value)
            assert getattr(cls(), field) is not None, name
            monkeypatch.delenv(name)
            checked += 1
    assert checked


def test_env_name_refuses_a_field_the_settings_do_not_have():
    assert env_name(ApiSettings, "public_url") == "MOSAIC_API_PUBLIC_URL"
    with pytest.raises(KeyError, match="no field 'public_urls'"):
        env_name(ApiSettings, "public_urls")
