"""A GitHub Actions runner for the tests: workflows, jobs and actions run on this host.

``WorkflowRunner`` (workflow.py) runs a workflow file's jobs with the real code of the actions
they use (``actions.ActionSources``: shared/gha-actions and registered repositories) against
the doubles named by ``host.Services``; ``rig.action_job`` runs venvlayers' own action as a
step of a user's job, ``rig.workflow_stage`` starts the doubles. Expressions: expressions.py.
"""
