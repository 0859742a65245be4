# The two commands of SPEC §3: `make demo` and `make test`. Everything is installed from nothing:
# .venv (python3.11), the package with pinned dependencies, and Spark's Glue 5 JARs into .jars/.
SHELL := /bin/bash
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
JARS := .jars/delta-spark_2.12-3.3.0.jar .jars/delta-storage-3.3.0.jar .jars/hadoop-aws-3.3.4.jar .jars/aws-java-sdk-bundle-1.12.262.jar \
  .jars/iceberg-spark-runtime-3.5_2.12-1.7.1.jar .jars/iceberg-aws-bundle-1.7.1.jar .jars/sqlite-jdbc-3.50.3.0.jar \
  .jars/postgresql-42.7.7.jar .jars/mariadb-java-client-3.5.3.jar .jars/mysql-connector-j-9.3.0.jar
# Spark 3.5 needs Java 8/11/17: prefer a 17 JDK when the default java is another version.
JAVA17 := $(shell for d in $$JAVA_HOME /usr/lib/jvm/java-17-openjdk-amd64 /usr/lib/jvm/*17*; do \
  [ -x "$$d/bin/java" ] && "$$d/bin/java" -version 2>&1 | grep -q '"17\.' && { echo $$d; break; }; done)
export JAVA_HOME := $(JAVA17)
PYTEST_ARGS ?=
# Two pytest workers (pytest-xdist), whole test files per worker so module fixtures (moto, PostgreSQL, a Spark
# cluster) stay in one process; much of the suite waits on JVM starts and subprocesses, which then overlap.
# PYTEST_WORKERS=0 runs in one process.
PYTEST_WORKERS ?= 2

.PHONY: install demo test test-fast bench lint clean doctor postgres airflow

# A real Apache Airflow for the `etl export airflow` tests, in its own venv so that its pins never touch .venv.
# Pinned in scripts/airflow-requirements.txt (Airflow's constraints files are not reachable from here); installed
# once (~2 min from PyPI, seconds from pip's cache) and kept until the requirements change.
AIRFLOW_VENV := .airflow-venv
# Airflow 2.10 (MWAA's other version) too, for the 2.10 rendering's import test: ~2 min more, once.
AIRFLOW2_VENV := .airflow-2.10-venv

HELPER_JAR := .jars/etl-framework-spark.jar
HELPER_SRC := $(wildcard java/etl_framework/spark/*.java)

# The framework's bytecode, as pip writes it for a regular install: an editable install leaves it to the first
# import, and under PYTHONDONTWRITEBYTECODE=1 every `etl` process compiled ~80 modules again (~0.2 s of CPU while
# Spark's JVM starts). Up-to-date files are skipped; a changed module is compiled anew when imported.
install: $(VENV)/.installed $(JARS) $(HELPER_JAR)
	@$(BIN)/python -m compileall -q -j 0 etl_framework >/dev/null

$(VENV)/.installed: pyproject.toml
	@command -v $(PY) >/dev/null || { echo "python3.11 not found: install Python 3.11" >&2; exit 1; }
	@[ -n "$(JAVA17)" ] || { echo "no Java 17 JDK found (Spark 3.5 needs Java 17): apt-get install openjdk-17-jdk-headless" >&2; exit 1; }
	[ -x $(BIN)/python ] || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

$(JARS): scripts/jars-pom.xml
	@command -v mvn >/dev/null || { echo "mvn not found: apt-get install maven (it resolves Spark's JARs once)" >&2; exit 1; }
	mvn -q -B -f scripts/jars-pom.xml dependency:copy-dependencies -DexcludeTransitive=true -DoutputDirectory=$(CURDIR)/.jars
	touch $(JARS)

# The framework's own Spark helper (the quality gate's side output, counter and quarantine commit, Iceberg commits
# with snapshot properties), compiled against the installed pyspark's JARs, Delta and the Iceberg Spark runtime.
ICEBERG_RUNTIME_JAR := .jars/iceberg-spark-runtime-3.5_2.12-1.7.1.jar
DELTA_JAR := .jars/delta-spark_2.12-3.3.0.jar
DELTA_STORAGE_JAR := .jars/delta-storage-3.3.0.jar
$(HELPER_JAR): $(HELPER_SRC) $(VENV)/.installed $(ICEBERG_RUNTIME_JAR) $(DELTA_JAR) $(DELTA_STORAGE_JAR)
	@mkdir -p .jars && rm -rf .jars/.helper-classes
	$(JAVA17)/bin/javac -nowarn --release 8 \
	  -cp "$$($(BIN)/python -c 'import pyspark,os;print(os.path.dirname(pyspark.__file__))')/jars/*:$(ICEBERG_RUNTIME_JAR):$(DELTA_JAR):$(DELTA_STORAGE_JAR)" \
	  -d .jars/.helper-classes $(HELPER_SRC)
	$(JAVA17)/bin/jar cf $@ -C .jars/.helper-classes etl_framework
	rm -rf .jars/.helper-classes

airflow: $(AIRFLOW_VENV)/.installed $(AIRFLOW2_VENV)/.installed

$(AIRFLOW_VENV)/.installed: scripts/airflow-requirements.txt
	[ -x $(AIRFLOW_VENV)/bin/python ] || $(PY) -m venv $(AIRFLOW_VENV)
	$(AIRFLOW_VENV)/bin/pip install -q --upgrade pip
	$(AIRFLOW_VENV)/bin/pip install -q -r scripts/airflow-requirements.txt
	touch $@

$(AIRFLOW2_VENV)/.installed: scripts/airflow-2.10-requirements.txt
	[ -x $(AIRFLOW2_VENV)/bin/python ] || $(PY) -m venv $(AIRFLOW2_VENV)
	$(AIRFLOW2_VENV)/bin/pip install -q --upgrade pip
	$(AIRFLOW2_VENV)/bin/pip install -q -r scripts/airflow-2.10-requirements.txt
	touch $@

demo: install
	$(BIN)/python scripts/demo.py

# A PostgreSQL server for the JDBC tests (tests/e2e/test_jdbc_postgres.py starts its own, in a temp folder, on a
# free port of 127.0.0.1, and stops it): Debian's package, installed only when its binaries are missing.
PG_BIN := $(firstword $(wildcard /usr/lib/postgresql/*/bin/initdb))
postgres:
	@if [ -z "$(PG_BIN)" ] && ! command -v initdb >/dev/null; then \
	  echo "installing PostgreSQL (Debian's postgresql package) for the JDBC tests"; \
	  { export DEBIAN_FRONTEND=noninteractive; apt-get install -y -q postgresql >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q postgresql >/dev/null; }; } \
	  || echo "warning: could not install postgresql: the JDBC tests against a real server will be skipped" >&2; \
	fi

test: install postgres $(AIRFLOW_VENV)/.installed $(AIRFLOW2_VENV)/.installed
	$(BIN)/ruff check etl_framework scripts tests
	$(BIN)/python -m pytest -q -n $(PYTEST_WORKERS) --dist loadfile --durations=25 $(PYTEST_ARGS)

test-fast: install
	$(BIN)/python -m pytest -q -n $(PYTEST_WORKERS) --dist loadfile -m "not slow" $(PYTEST_ARGS)

bench: install
	$(BIN)/python scripts/bench

lint: install
	$(BIN)/ruff check etl_framework scripts tests

doctor: install
	$(BIN)/etl doctor

clean:
	rm -rf $(VENV) $(AIRFLOW_VENV) $(AIRFLOW2_VENV) .jars .etl data reports
