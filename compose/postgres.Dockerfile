# PostgreSQL with Apache AGE (the base image) and pgvector (Debian package).
FROM apache/age:release_PG16_1.5.0
RUN apt-get update \
 && apt-get install -y --no-install-recommends postgresql-16-pgvector \
 && rm -rf /var/lib/apt/lists/*
# AGE must be loaded in every session; preloading saves the LOAD per connection.
CMD ["postgres", "-c", "shared_preload_libraries=age"]
