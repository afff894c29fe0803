package crmsync

// RunID identifies one run of a workflow.
type RunID string
