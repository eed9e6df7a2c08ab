"""Every name of the week-5 skill system and messaging exists where the Python API page
says ("Coming from the week-5 API"), as the same object as eventsrc's own."""

from __future__ import annotations

import inspect

import eventsrc
import eventsrc.communication.task_messaging as task_messaging
import eventsrc.skills.skill_discovery as skill_discovery
import eventsrc.skills.skill_registry as skill_registry
from eventsrc.node import discovery, messaging


def test_the_week5_modules_hold_eventsrcs_objects() -> None:
    assert skill_registry.SkillRegistry is eventsrc.SkillRegistry
    assert skill_registry.SkillMetadata is eventsrc.SkillMetadata
    assert skill_registry.SkillCategory is eventsrc.SkillCategory
    assert skill_discovery.SkillDiscovery is eventsrc.SkillDiscovery
    assert skill_discovery.BUILTIN_SKILLS is eventsrc.BUILTIN_SKILLS
    assert task_messaging.TaskMessaging is messaging.TaskMessaging
    assert task_messaging.TaskRequestResponse is messaging.TaskRequestResponse
    # One SkillDiscovery: the scanner's module resolves the name to the same class.
    assert discovery.SkillDiscovery is eventsrc.SkillDiscovery
    assert issubclass(eventsrc.SkillDiscovery, discovery.SkillScanner)


def test_the_week5_methods_exist() -> None:
    names = {
        eventsrc.SkillRegistry: [
            "register_skill",
            "register_skill_instance",
            "unregister_skill_instance",
            "get_skill_metadata",
            "get_skill_instances",
            "get_available_nodes_for_skill",
            "get_node_skills",
            "list_skills",
            "resolve_skill_dependencies",
            "get_stats",
            "cleanup_stale_instances",
        ],
        eventsrc.SkillDiscovery: [
            "register_local_skills",
            "start",
            "stop",
            "get_discovered_skills",
            "get_skill_stats",
            "scan",
        ],
        messaging.TaskMessaging: [
            "start",
            "stop",
            "register_task_handler",
            "unregister_task_handler",
            "send_task",
            "broadcast_task",
            "register_result_callback",
            "wait_for_result",
            "send_heartbeat",
        ],
        messaging.TaskRequestResponse: ["request", "register_handler"],
    }
    for owner, methods in names.items():
        missing = [m for m in methods if not callable(getattr(owner, m, None))]
        assert not missing, f"{owner.__name__} lacks {missing}"
    registry_methods = [getattr(eventsrc.SkillRegistry, m) for m in names[eventsrc.SkillRegistry]]
    assert all(inspect.iscoroutinefunction(m) for m in registry_methods)
    assert callable(skill_discovery.register_builtin_skills)
    assert callable(skill_discovery.build_manifest)


def test_builtin_skills_are_manifests_in_the_week5_shape() -> None:
    keys = {
        "name",
        "description",
        "category",
        "version",
        "author",
        "dependencies",
        "required_resources",
        "tags",
    }
    assert isinstance(eventsrc.BUILTIN_SKILLS, list)
    assert [entry["name"] for entry in eventsrc.BUILTIN_SKILLS] == [
        "python",
        "search",
        "weather",
        "data-analysis",
        "ml",
        "media",
    ]
    for entry in eventsrc.BUILTIN_SKILLS:
        assert set(entry) == keys
        assert eventsrc.SkillMetadata.model_validate(entry).name == entry["name"]
    ml = next(e for e in eventsrc.BUILTIN_SKILLS if e["name"] == "ml")
    assert ml["category"] == "machine_learning"
    assert ml["dependencies"] == ["python", "data-analysis"]
