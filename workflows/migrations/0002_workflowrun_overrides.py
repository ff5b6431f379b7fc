from django.db import migrations, models


def move_overrides_out_of_inputs(apps, schema_editor):
    """Runs made before this field kept their overrides under inputs["_overrides"]."""
    WorkflowRun = apps.get_model("workflows", "WorkflowRun")
    for run in WorkflowRun.objects.filter(inputs__has_key="_overrides"):
        run.overrides = run.inputs.pop("_overrides") or {}
        run.save(update_fields=["inputs", "overrides"])


class Migration(migrations.Migration):
    dependencies = [
        ("workflows", "0001_initial"),
    ]

    operations = [
        migrations.AddField(
            model_name="workflowrun",
            name="overrides",
            field=models.JSONField(blank=True, default=dict),
        ),
        migrations.RunPython(move_overrides_out_of_inputs, migrations.RunPython.noop),
    ]
