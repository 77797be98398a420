"""``wildfer export``: a model to ONNX (kept apart from wildfer.models.onnx so the CLI starts
without importing torch)."""

from __future__ import annotations

from pathlib import Path


def register(app, panel: str) -> None:
    import typer

    @app.command("export", rich_help_panel=panel)
    def export(
        model: str = typer.Argument(..., help="Built-in name (default, fast, ferplus), checkpoint .pt or .safetensors."),
        onnx: Path = typer.Option(..., "--onnx", help="Where to write the ONNX file."),
        opset: int = typer.Option(17, help="ONNX opset."),
        check: bool = typer.Option(True, help="Compare torch and onnxruntime probabilities on random faces."),
    ):
        """Export a model to ONNX (dynamic batch; class names in the metadata)."""
        import numpy as np
        from rich.console import Console

        from ..errors import WildferError
        from ..paths import check_output_file
        from .loader import load_model
        from .onnx import OnnxRunner, export_onnx, onnx_opsets

        console = Console()
        lo, hi = onnx_opsets()
        if not lo <= opset <= hi:
            raise WildferError(f"--opset {opset}: this torch exports ONNX opsets {lo} to {hi}")
        check_output_file(onnx, "--onnx")  # before the model is loaded and traced
        clf = load_model(model)
        path = export_onnx(clf, onnx, opset)
        msg = f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB)"
        if check:
            rng = np.random.default_rng(0)
            faces = rng.integers(0, 256, size=(16, clf.size, clf.size), dtype=np.uint8)
            p_torch = clf.predict_proba(faces)
            x = clf.to_tensor(faces).numpy()
            logits = OnnxRunner(path)(x)
            p_onnx = np.exp(logits - logits.max(1, keepdims=True))
            p_onnx /= p_onnx.sum(1, keepdims=True)
            msg += f"; max |p_torch - p_onnx| = {np.abs(p_torch - p_onnx).max():.2e}"
        console.print(msg, soft_wrap=True, highlight=False, markup=False)
