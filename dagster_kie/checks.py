"""Asset checks on what landed in S3: images decode, sizes and counts match, manifests exist.

The images are decoded while they stream through the run (before they are stored), so the checks
are computed from the batch report without downloading everything again.
"""

from __future__ import annotations

import dagster as dg

from dagster_kie.batch import BatchReport

__all__ = ["IMAGE_CHECKS", "check_results"]

IMAGE_CHECKS: dict[str, str] = {
    "images_decode": "Every stored image decoded fully (PNG/JPEG/WebP) before it was stored.",
    "dimensions_match": "Every image has the width and height its request's image_size asks for.",
    "counts_match": "Every request has as many images as its num_images.",
    "manifests_present": "Every request with images has its JSON manifest in S3.",
}


def check_results(report: BatchReport, asset_key: dg.AssetKey) -> list[dg.AssetCheckResult]:
    """The four image checks for the requests of one batch that have images."""
    done = [outcome for outcome in report.outcomes if outcome.ok]
    images = [image for outcome in done for image in outcome.images]
    wrong_size = [
        f"{outcome.request_id}/{image.index}: {image.width}x{image.height}, "
        f"expected {outcome.expected_size[0]}x{outcome.expected_size[1]}"
        for outcome in done
        if outcome.expected_size is not None
        for image in outcome.images
        if (image.width, image.height) != outcome.expected_size
    ]
    wrong_count = [
        f"{outcome.request_id}: {len(outcome.images)} of {outcome.expected_images}"
        for outcome in done
        if len(outcome.images) != outcome.expected_images
    ]
    no_manifest = [outcome.request_id for outcome in done if not outcome.manifest_uri]
    undecoded = [image.uri for image in images if image.width <= 0 or image.height <= 0]

    def result(name: str, problems: list[str], checked: int) -> dg.AssetCheckResult:
        return dg.AssetCheckResult(
            asset_key=asset_key,
            check_name=name,
            passed=not problems,
            severity=dg.AssetCheckSeverity.ERROR,
            metadata={
                "checked": checked,
                "problems": len(problems),
                "examples": dg.MetadataValue.json(problems[:20]),
            },
        )

    return [
        result("images_decode", undecoded, len(images)),
        result("dimensions_match", wrong_size, len(images)),
        result("counts_match", wrong_count, len(done)),
        result("manifests_present", no_manifest, len(done)),
    ]
