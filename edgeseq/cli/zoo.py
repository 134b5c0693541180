"""``edgeseq zoo``: the seed models with their parameter counts and recipes."""

import typer

from edgeseq.cli import app
from edgeseq.cli.common import JsonFlag, finish, table, user_errors


@app.command("zoo")
def zoo_command(as_json: JsonFlag = False) -> None:
    """List the zoo models: architecture, parameter count, seed recipe and the seed result to reach.

    Building the models to count parameters needs Keras (pip install 'edgeseq[train]').
    """
    with user_errors("zoo", as_json):
        from edgeseq.training.zoo import ZOO, ZooName

        rows = []
        for name in ZooName:
            entry = ZOO[name]
            r = entry.recipe
            rows.append({"name": name.value, "parameters": int(entry.build().count_params()), "task": entry.task.value,
                         "optimizer": r.optimizer, "learning_rate": r.learning_rate, "schedule": r.schedule, "batch_size": r.batch_size,
                         "epochs": r.epochs, "seed_metric": entry.seed_metric, "seed_target": entry.seed_target,
                         "architecture": entry.summary})
    if as_json:
        finish("zoo", as_json, rows)
        return
    headers = ["name", "params", "task", "opt", "lr", "batch", "epochs", "seed target", "architecture"]
    typer.echo(table(headers, [[r["name"], f"{r['parameters']:,}", r["task"], r["optimizer"], f"{r['learning_rate']:g}" + (" cos" if r["schedule"] == "cosine" else ""),
                                r["batch_size"], r["epochs"], f"{r['seed_target']:.1%} {r['seed_metric']}",
                                r["architecture"]] for r in rows]))
