from django.urls import path

from . import views

urlpatterns = [
    path("", views.workflow_list, name="workflow-list"),
    path("import", views.import_rivet, name="workflow-import"),
    path("ask", views.ask, name="workflow-ask"),
    path("<int:pk>/", views.workflow_detail, name="workflow-detail"),
    path("runs/<int:pk>/", views.run_detail, name="workflow-run"),
]
