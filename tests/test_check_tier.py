"""make check's guard (conftest.py): while the `process` tests are left out, a test without
that marker that starts a child process fails at once and names the command, so that the
quick tier stays free of child processes as tests are added. Nothing here starts one: the
guard refuses before the process exists."""

pytest_plugins = ["pytester"]


def test_check_tier_refuses_a_child_process_of_an_unmarked_test(pytester):
    pytester.syspathinsert()
    pytester.makepyfile(guard="from conftest import pytest_runtest_protocol  # noqa: F401")
    pytester.makeini("[pytest]\nmarkers =\n    process: starts a child process\n")
    pytester.makepyfile(test_spawns="""
        import subprocess
        import sys

        import pytest

        def test_unmarked():
            subprocess.run([sys.executable, "-c", "pass"])

        @pytest.mark.process
        def test_marked():
            subprocess.run([sys.executable, "-c", "pass"])
        """)
    quick = pytester.runpytest_inprocess("-p", "guard", "-m", "not process")
    quick.assert_outcomes(failed=1, deselected=1)
    quick.stdout.fnmatch_lines(["*test_unmarked starts a child process (subprocess: *'-c', "
                                "'pass']) but has no `process` marker*"])
