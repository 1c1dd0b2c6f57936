pytest_plugins = ["tests.fakes.fixtures", "tests.integration.harness"]
