DROP TABLE posts;
DROP TABLE friendships;
DROP TABLE login_tokens;
DROP TABLE users;
