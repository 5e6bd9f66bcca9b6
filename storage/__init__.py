"""Storage: digests, drivers and the content-addressed blob and upload stores."""
