#!/usr/bin/env python3
"""Parses a JUnit XML file with junitparser (a JUnit consumer used by CI
tooling) and prints, as JSON, each test case with its result and its
standard output.

Usage: read_junit.py FILE.xml
"""
import json
import sys

from junitparser import JUnitXml, Failure


def main():
    xml = JUnitXml.fromfile(sys.argv[1])
    cases = []
    suites = 0
    for suite in xml:
        suites += 1
        for case in suite:
            failures = [r for r in case.result if isinstance(r, Failure)]
            cases.append({
                "suite": suite.name,
                "classname": case.classname,
                "name": case.name,
                "passed": case.is_passed,
                "failure": failures[0].message if failures else None,
                "system_out": case.system_out,
            })
    print(json.dumps({"suites": suites, "tests": xml.tests, "failures": xml.failures, "cases": cases}))


if __name__ == "__main__":
    main()
