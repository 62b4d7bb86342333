-- Run once per MySQL/MariaDB server as an administrator, before setup.sh with DB_KIND=mysql.
-- Idempotent. Then give Vault's account a password and unlock it:
--   ALTER USER 'vault_admin'@'%' IDENTIFIED BY '...' ACCOUNT UNLOCK;
-- and pass the same password to setup.sh as MYSQL_ADMIN_PASSWORD (first run only).
-- Written for MariaDB 10.5+ (tested with 10.11); MySQL 8 notes inline.
CREATE DATABASE IF NOT EXISTS `app`;

-- The account Vault connects as: creates and drops the dynamic users, grants them privileges
-- on `app` (so it holds them WITH GRANT OPTION), and ends their sessions at revocation
-- (CONNECTION ADMIN; MySQL 8: CONNECTION_ADMIN). PROCESS lets the procedure below see them.
CREATE USER IF NOT EXISTS 'vault_admin'@'%' ACCOUNT LOCK;
GRANT CREATE USER, CONNECTION ADMIN, PROCESS ON *.* TO 'vault_admin'@'%';
GRANT ALL PRIVILEGES ON `app`.* TO 'vault_admin'@'%' WITH GRANT OPTION;

-- MySQL has no KILL USER: revocation calls this instead (MariaDB can use either).
CREATE DATABASE IF NOT EXISTS `vault_tools`;
DROP PROCEDURE IF EXISTS `vault_tools`.`kill_user_sessions`;
DELIMITER //
CREATE PROCEDURE `vault_tools`.`kill_user_sessions`(IN p_user VARCHAR(128))
  SQL SECURITY INVOKER
BEGIN
  DECLARE done INT DEFAULT FALSE;
  DECLARE session_id BIGINT UNSIGNED;
  DECLARE sessions CURSOR FOR
    SELECT ID FROM information_schema.PROCESSLIST WHERE USER = p_user;
  DECLARE CONTINUE HANDLER FOR NOT FOUND SET done = TRUE;
  DECLARE CONTINUE HANDLER FOR 1094 BEGIN END;  -- the session ended by itself meanwhile
  OPEN sessions;
  kill_loop: LOOP
    FETCH sessions INTO session_id;
    IF done THEN
      LEAVE kill_loop;
    END IF;
    SET @vaultdb_kill = CONCAT('KILL CONNECTION ', session_id);
    PREPARE kill_stmt FROM @vaultdb_kill;
    EXECUTE kill_stmt;
    DEALLOCATE PREPARE kill_stmt;
  END LOOP;
  CLOSE sessions;
END //
DELIMITER ;
GRANT EXECUTE ON PROCEDURE `vault_tools`.`kill_user_sessions` TO 'vault_admin'@'%';
