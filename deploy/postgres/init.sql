-- First start of the compose PostgreSQL: one database per service (both user-service
-- replicas share `users`). The role is POSTGRES_USER from compose.yaml.
CREATE DATABASE users;
CREATE DATABASE orders;
