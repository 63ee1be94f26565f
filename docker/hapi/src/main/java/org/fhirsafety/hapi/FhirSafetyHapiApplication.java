package org.fhirsafety.hapi;

import ca.uhn.fhir.batch2.jobs.config.Batch2JobsConfig;
import ca.uhn.fhir.jpa.batch2.JpaBatch2Config;
import ca.uhn.fhir.jpa.config.r4.JpaR4Config;
import ca.uhn.fhir.jpa.subscription.channel.config.SubscriptionChannelConfig;
import ca.uhn.fhir.jpa.subscription.match.config.SubscriptionProcessorConfig;
import ca.uhn.fhir.jpa.subscription.submit.config.SubscriptionSubmitterConfig;
import java.nio.file.Path;
import java.util.HashMap;
import java.util.Map;
import org.springframework.boot.SpringApplication;
import org.springframework.boot.autoconfigure.SpringBootApplication;
import org.springframework.boot.autoconfigure.data.jpa.JpaRepositoriesAutoConfiguration;
import org.springframework.boot.autoconfigure.elasticsearch.ElasticsearchClientAutoConfiguration;
import org.springframework.boot.autoconfigure.elasticsearch.ElasticsearchRestClientAutoConfiguration;
import org.springframework.boot.autoconfigure.flyway.FlywayAutoConfiguration;
import org.springframework.boot.autoconfigure.orm.jpa.HibernateJpaAutoConfiguration;
import org.springframework.boot.autoconfigure.quartz.QuartzAutoConfiguration;
import org.springframework.boot.autoconfigure.thymeleaf.ThymeleafAutoConfiguration;
import org.springframework.boot.autoconfigure.validation.ValidationAutoConfiguration;
import org.springframework.context.annotation.Import;

/**
 * Entry point of fhir-safety's lean HAPI FHIR JPA R4 server.
 *
 * <p>Usage: {@code java -Xmx1g -jar fhir-safety-hapi.jar [--server.port=8080] [--hapi.h2-file=PATH]}.
 * The database is in-memory H2 unless {@code --hapi.h2-file=PATH} (or env {@code HAPI_H2_FILE}) asks for an
 * H2 file, or {@code --spring.datasource.url=...} (env {@code SPRING_DATASOURCE_URL}) names another database.
 */
@SpringBootApplication(
		exclude = {
			// HAPI builds its own EntityManagerFactory, JPA repositories and Quartz scheduler (FhirServerConfig,
			// JpaConfig); Boot's versions would only duplicate or fight them.
			HibernateJpaAutoConfiguration.class,
			JpaRepositoriesAutoConfiguration.class,
			QuartzAutoConfiguration.class,
			// On the classpath only as HAPI dependencies; none of them is used here.
			FlywayAutoConfiguration.class,
			ThymeleafAutoConfiguration.class,
			ElasticsearchClientAutoConfiguration.class,
			ElasticsearchRestClientAutoConfiguration.class,
			ValidationAutoConfiguration.class
		})
@Import({
	JpaR4Config.class,
	// Subscriptions: matching on write, processing, and the in-memory channels between them.
	SubscriptionSubmitterConfig.class,
	SubscriptionProcessorConfig.class,
	SubscriptionChannelConfig.class,
	// Batch2 jobs, needed by Bulk Data $export (and $reindex, $delete-expunge).
	JpaBatch2Config.class,
	Batch2JobsConfig.class
})
public class FhirSafetyHapiApplication {

	static final String H2_FILE_PROPERTY = "hapi.h2-file";
	static final String H2_FILE_ENV = "HAPI_H2_FILE";
	static final String LUCENE_PROPERTY_PREFIX = "spring.jpa.properties.hibernate.search.backend.directory.";
	// DB_CLOSE_ON_EXIT=FALSE: Spring closes the pool (and so the database) on shutdown, after HAPI's last
	// write; H2's own shutdown hook would race it.
	static final String H2_OPTIONS = ";DB_CLOSE_ON_EXIT=FALSE";

	public static void main(String[] args) {
		SpringApplication app = new SpringApplication(FhirSafetyHapiApplication.class);
		// Default properties have the LOWEST precedence, so an explicit --spring.datasource.url or
		// SPRING_DATASOURCE_URL (e.g. PostgreSQL) still wins over the H2 URL chosen here.
		Map<String, Object> defaults = new HashMap<>(ServerSettings.load().springDefaults());
		defaults.putAll(defaultDatasource(h2FileFrom(args)));
		app.setDefaultProperties(defaults);
		app.run(args);
	}

	/** The H2 file requested by --hapi.h2-file=PATH, -Dhapi.h2-file=PATH or HAPI_H2_FILE, else null. */
	static String h2FileFrom(String[] args) {
		String prefix = "--" + H2_FILE_PROPERTY + "=";
		for (String arg : args) {
			if (arg.startsWith(prefix)) {
				return blankToNull(arg.substring(prefix.length()));
			}
		}
		String fromSystem = blankToNull(System.getProperty(H2_FILE_PROPERTY));
		return fromSystem != null ? fromSystem : blankToNull(System.getenv(H2_FILE_ENV));
	}

	static Map<String, Object> defaultDatasource(String h2File) {
		Map<String, Object> props = new HashMap<>();
		if (h2File == null) {
			// DB_CLOSE_DELAY=-1 keeps the in-memory database alive while the pool has no open connection.
			props.put("spring.datasource.url", "jdbc:h2:mem:hapi;DB_CLOSE_DELAY=-1" + H2_OPTIONS);
		} else {
			// H2 appends .mv.db itself; accept the path with or without it.
			String path = Path.of(h2File).toAbsolutePath().normalize().toString();
			if (path.endsWith(".mv.db")) {
				path = path.substring(0, path.length() - ".mv.db".length());
			}
			props.put("spring.datasource.url", "jdbc:h2:file:" + path + H2_OPTIONS);
			// Keep the Lucene index (terminology) beside the database so both survive a restart.
			props.put(LUCENE_PROPERTY_PREFIX + "type", "local-filesystem");
			props.put(LUCENE_PROPERTY_PREFIX + "root", path + "-lucene");
		}
		return props;
	}

	private static String blankToNull(String value) {
		return value == null || value.isBlank() ? null : value.trim();
	}
}
