package org.fhirsafety.hapi;

import ca.uhn.fhir.batch2.maintenance.JobMaintenanceServiceImpl;
import ca.uhn.fhir.context.FhirContext;
import ca.uhn.fhir.jpa.api.IDaoRegistry;
import ca.uhn.fhir.jpa.api.config.JpaStorageSettings;
import ca.uhn.fhir.jpa.api.config.ThreadPoolFactoryConfig;
import ca.uhn.fhir.jpa.api.dao.IFhirSystemDao;
import ca.uhn.fhir.jpa.config.util.HapiEntityManagerFactoryUtil;
import ca.uhn.fhir.jpa.config.util.ResourceCountCacheUtil;
import ca.uhn.fhir.jpa.dao.FulltextSearchSvcImpl;
import ca.uhn.fhir.jpa.dao.IFulltextSearchSvc;
import ca.uhn.fhir.jpa.dao.search.HSearchSortHelperImpl;
import ca.uhn.fhir.jpa.dao.search.IHSearchSortHelper;
import ca.uhn.fhir.jpa.model.config.PartitionSettings;
import ca.uhn.fhir.jpa.model.config.SubscriptionSettings;
import ca.uhn.fhir.jpa.model.dialect.HapiFhirH2Dialect;
import ca.uhn.fhir.jpa.model.dialect.HapiFhirPostgresDialect;
import ca.uhn.fhir.jpa.provider.DaoRegistryResourceSupportedSvc;
import ca.uhn.fhir.jpa.search.DatabaseBackedPagingProvider;
import ca.uhn.fhir.jpa.search.IStaleSearchDeletingSvc;
import ca.uhn.fhir.jpa.search.StaleSearchDeletingSvcImpl;
import ca.uhn.fhir.jpa.subscription.match.deliver.email.IEmailSender;
import ca.uhn.fhir.jpa.util.ResourceCountCache;
import ca.uhn.fhir.rest.api.IResourceSupportedSvc;
import ca.uhn.fhir.rest.server.util.ISearchParamRegistry;
import jakarta.persistence.EntityManagerFactory;
import java.util.HashMap;
import java.util.Map;
import javax.sql.DataSource;
import org.hibernate.boot.model.naming.CamelCaseToUnderscoresNamingStrategy;
import org.hibernate.cfg.AvailableSettings;
import org.hl7.fhir.dstu2.model.Subscription.SubscriptionChannelType;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;
import org.springframework.beans.factory.config.BeanPostProcessor;
import org.springframework.beans.factory.config.ConfigurableListableBeanFactory;
import org.springframework.boot.autoconfigure.jdbc.DataSourceProperties;
import org.springframework.boot.autoconfigure.orm.jpa.JpaProperties;
import org.springframework.boot.context.properties.EnableConfigurationProperties;
import org.springframework.boot.orm.jpa.hibernate.SpringImplicitNamingStrategy;
import org.springframework.context.annotation.Bean;
import org.springframework.context.annotation.Configuration;
import org.springframework.context.annotation.Import;
import org.springframework.context.annotation.Primary;
import org.springframework.orm.jpa.JpaTransactionManager;
import org.springframework.orm.jpa.LocalContainerEntityManagerFactoryBean;
import org.springframework.transaction.annotation.EnableTransactionManagement;

/**
 * Storage side of the server: the beans HAPI's {@code JpaR4Config} expects the application to provide
 * (storage/subscription/partition settings, the JPA EntityManagerFactory and transaction manager, paging,
 * search helpers), all driven by {@link ServerSettings}.
 */
@Configuration
@EnableTransactionManagement
@EnableConfigurationProperties(JpaProperties.class)
@Import(ThreadPoolFactoryConfig.class)
public class FhirServerConfig {

	private static final Logger LOG = LoggerFactory.getLogger(FhirServerConfig.class);

	@Bean
	public ServerSettings serverSettings() {
		return ServerSettings.load();
	}

	@Bean
	public JpaStorageSettings jpaStorageSettings(ServerSettings settings) {
		JpaStorageSettings storage = new JpaStorageSettings();
		// References to other servers (absolute URLs) are stored as they are instead of being rejected.
		storage.setAllowExternalReferences(settings.allowExternalReferences());
		// Client-assigned ids of any form (PUT Patient/123 or Patient/abc); the server then assigns UUIDs
		// itself so that its own ids can never collide with numeric client ids.
		storage.setResourceClientIdStrategy(
				JpaStorageSettings.ClientIdStrategyEnum.valueOf(settings.clientIdStrategy()));
		storage.setResourceServerIdStrategy(JpaStorageSettings.IdStrategyEnum.valueOf(settings.serverIdStrategy()));
		// Test data may reference resources that are loaded later (or never): store the reference as given.
		storage.setEnforceReferentialIntegrityOnWrite(settings.enforceReferentialIntegrityOnWrite());
		storage.setEnforceReferentialIntegrityOnDelete(settings.enforceReferentialIntegrityOnDelete());
		storage.setAutoCreatePlaceholderReferenceTargets(settings.autoCreatePlaceholderReferenceTargets());
		storage.setAllowMultipleDelete(settings.allowMultipleDelete());
		storage.setExpungeEnabled(settings.expungeEnabled());
		// HAPI reuses the results of an identical search for 60 s by default, so a search right after a write
		// could miss it. 0 turns that off: every search sees the current data.
		storage.setReuseCachedSearchResultsForMillis(settings.reuseCachedSearchResultsMillis());
		// Page size is capped by the paging provider (max_page_size) only. Capping the fetch size as well made
		// Bulk Data $export fail (HAPI-0464) for any type with more than max_page_size resources: its expand
		// step loads each chunk of ids synchronously and a smaller cap turns that load asynchronous.
		// Small batch jobs (e.g. a Bulk Data $export of test data) move to their next step at once instead
		// of waiting for the once-a-minute maintenance pass: an export takes seconds instead of minutes.
		storage.setJobFastTrackingEnabled(true);
		return storage;
	}

	@Bean
	public SubscriptionSettings subscriptionSettings(ServerSettings settings) {
		SubscriptionSettings subscriptions = new SubscriptionSettings();
		if (settings.subscriptionResthook()) {
			subscriptions.addSupportedSubscriptionType(SubscriptionChannelType.RESTHOOK);
		}
		return subscriptions;
	}

	@Bean
	public PartitionSettings partitionSettings() {
		return new PartitionSettings(); // partitioning off
	}

	/**
	 * HAPI's EntityManagerFactory on Spring Boot's DataSource (spring.datasource.*). Hibernate properties come
	 * from spring.jpa.properties.* with the defaults below; the dialect follows the JDBC URL unless
	 * spring.jpa.properties.hibernate.dialect names one.
	 */
	@Primary
	@Bean
	public LocalContainerEntityManagerFactoryBean entityManagerFactory(
			ConfigurableListableBeanFactory beanFactory,
			FhirContext fhirContext,
			JpaStorageSettings storageSettings,
			JpaProperties jpaProperties,
			DataSourceProperties dataSourceProperties,
			DataSource dataSource) {
		LocalContainerEntityManagerFactoryBean emf =
				HapiEntityManagerFactoryUtil.newEntityManagerFactory(beanFactory, fhirContext, storageSettings);
		Map<String, Object> props = new HashMap<>(jpaProperties.getProperties());
		String url = dataSourceProperties.determineUrl();
		if (!props.containsKey(AvailableSettings.DIALECT)) {
			props.put(AvailableSettings.DIALECT, dialectFor(url));
		}
		props.putIfAbsent(AvailableSettings.HBM2DDL_AUTO, "update");
		props.putIfAbsent(AvailableSettings.STATEMENT_BATCH_SIZE, "20");
		props.putIfAbsent(AvailableSettings.USE_SECOND_LEVEL_CACHE, "false");
		props.putIfAbsent(AvailableSettings.USE_QUERY_CACHE, "false");
		props.putIfAbsent(AvailableSettings.SHOW_SQL, "false");
		// Same naming strategies as Spring Boot's JPA auto-configuration (and so as the official image), so a
		// PostgreSQL schema created by either server has the same names.
		props.putIfAbsent(AvailableSettings.IMPLICIT_NAMING_STRATEGY, SpringImplicitNamingStrategy.class.getName());
		props.putIfAbsent(
				AvailableSettings.PHYSICAL_NAMING_STRATEGY, CamelCaseToUnderscoresNamingStrategy.class.getName());
		props.putIfAbsent(AvailableSettings.SCANNER, "org.hibernate.boot.archive.scan.internal.DisabledScanner");
		// Hibernate's temporary "HTE_" tables for multi-table bulk HQL: HAPI does not need them, and on H2
		// their DDL fails (duplicate columns) and fills the log.
		props.putIfAbsent("hibernate.query.mutation_strategy.global_temporary.create_tables", "false");
		props.putIfAbsent("hibernate.query.mutation_strategy.global_temporary.drop_tables", "false");
		// Envers (audit history) is only on the classpath as a HAPI dependency; skipping it saves startup time.
		props.putIfAbsent("hibernate.integration.envers.enabled", "false");
		// Hibernate Search (HAPI needs it to $expand ValueSets over stored CodeSystems) is configured by the
		// spring.jpa.properties.hibernate.search.* entries of settings.json: Lucene, index in the heap, or
		// beside the H2 file (see FhirSafetyHapiApplication).
		// Without the URL's parameters, which may hold a password.
		LOG.info("Database {} with dialect {}", url.split("[?;]")[0], props.get(AvailableSettings.DIALECT));
		emf.setPersistenceUnitName("HAPI_PU");
		emf.setJpaPropertyMap(props);
		emf.setDataSource(dataSource);
		return emf;
	}

	static String dialectFor(String jdbcUrl) {
		if (jdbcUrl != null && jdbcUrl.startsWith("jdbc:postgresql:")) {
			return HapiFhirPostgresDialect.class.getName();
		}
		if (jdbcUrl != null && jdbcUrl.startsWith("jdbc:h2:")) {
			return HapiFhirH2Dialect.class.getName();
		}
		throw new IllegalStateException("No default HAPI dialect for " + jdbcUrl
				+ "; set spring.jpa.properties.hibernate.dialect (see ca.uhn.fhir.jpa.model.dialect)");
	}

	@Primary
	@Bean
	public JpaTransactionManager transactionManager(EntityManagerFactory entityManagerFactory) {
		return new JpaTransactionManager(entityManagerFactory);
	}

	@Bean
	public DatabaseBackedPagingProvider databaseBackedPagingProvider(ServerSettings settings) {
		// Search results are paged through the database, so `next` links survive across requests.
		DatabaseBackedPagingProvider paging = new DatabaseBackedPagingProvider();
		paging.setDefaultPageSize(settings.defaultPageSize());
		paging.setMaximumPageSize(settings.maxPageSize());
		return paging;
	}

	@Bean
	public IFulltextSearchSvc fulltextSearchSvc() {
		// Its presence tells HAPI that Hibernate Search is available (terminology expansion, _text/_content).
		return new FulltextSearchSvcImpl();
	}

	@Bean
	public IHSearchSortHelper hSearchSortHelper(ISearchParamRegistry searchParamRegistry) {
		return new HSearchSortHelperImpl(searchParamRegistry);
	}

	@Bean
	public IStaleSearchDeletingSvc staleSearchDeletingSvc() {
		return new StaleSearchDeletingSvcImpl();
	}

	@Bean
	public IResourceSupportedSvc resourceSupportedSvc(IDaoRegistry daoRegistry) {
		return new DaoRegistryResourceSupportedSvc(daoRegistry);
	}

	@Bean(name = "myResourceCountsCache")
	public ResourceCountCache resourceCountsCache(IFhirSystemDao<?, ?> systemDao) {
		return ResourceCountCacheUtil.newResourceCountCache(systemDao);
	}

	/**
	 * Batch2 jobs (Bulk Data $export) start at the next maintenance pass, once a minute by default; every 5 s
	 * an export of test data finishes within seconds. Static: a BeanPostProcessor must not wait for this
	 * configuration's other beans.
	 */
	@Bean
	public static BeanPostProcessor batch2MaintenanceEvery5Seconds() {
		return new BeanPostProcessor() {
			@Override
			public Object postProcessBeforeInitialization(Object bean, String beanName) {
				if (bean instanceof JobMaintenanceServiceImpl maintenance) {
					maintenance.setScheduledJobFrequencyMillis(5_000);
				}
				return bean;
			}
		};
	}

	@Bean
	public IEmailSender emailSender() {
		// Only rest-hook subscriptions are enabled, but HAPI's delivery wiring needs an email sender bean.
		return details -> LOG.warn("Email subscriptions are not supported by this server; message dropped");
	}
}
