"""Framework adapters: thin layers over `ordinance.client.guard` for agent frameworks.

``ordinance.adapters.langchain`` (LangChain / LangGraph tools) and
``ordinance.adapters.openai_agents`` (OpenAI Agents SDK function tools) import their
framework; install the extra (``ordinance[langchain]``, ``ordinance[openai-agents]``).
Nothing else in Ordinance imports them.
"""
