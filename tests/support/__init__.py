"""What several test folders share: builders, fakes, fixtures, small servers."""
