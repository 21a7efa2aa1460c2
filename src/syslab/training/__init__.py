"""Training systems: stragglers what-if analysis, WLB-LLM, ..."""
