"""Every Relay block meets Prefect's block standards (descriptions, code example, docs)."""

from __future__ import annotations

import pytest
from prefect.blocks.core import Block
from prefect.testing.standard_test_suites import BlockStandardTestSuite

import blocks


@pytest.mark.parametrize("block", [getattr(blocks, name) for name in blocks.__all__])
class TestAllBlocksAdhereToStandards(BlockStandardTestSuite):
    @pytest.fixture
    def block(self, block: type[Block]) -> type[Block]:
        return block
