module github.com/crmsync/crmsync

go 1.25.0

require (
	golang.org/x/sync v0.22.0
	golang.org/x/time v0.15.0
)

require pgregory.net/rapid v1.3.0
